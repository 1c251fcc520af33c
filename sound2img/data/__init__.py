"""Dataset readers (VGGSound, AudioSet, ESC-50, UrbanSound8K, CSV manifests, synthetic),
prompts with EDA, and the on-disk CLIP embedding cache."""

from sound2img.data.base import AudioClipDataset, DatasetError, Record, SampleReadError, collate
from sound2img.data.embedding_cache import EmbeddingCache
from sound2img.data.prompts import augment_text, make_prompt, zero_shot_templates
from sound2img.data.registry import build_dataset, list_datasets

__all__ = [
    "AudioClipDataset",
    "DatasetError",
    "EmbeddingCache",
    "Record",
    "SampleReadError",
    "augment_text",
    "build_dataset",
    "collate",
    "list_datasets",
    "make_prompt",
    "zero_shot_templates",
]
