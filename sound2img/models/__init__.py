"""Neural networks and their checkpoint readers (audio encoders, CLIP towers, StyleGAN2, IR-SE50)."""
