"""Band-limited resampling as librosa 0.8.1 did it (``res_type="kaiser_best"``: resampy 0.2.2
plus librosa's length fix), the decoding the authors' released encoder saw (docs/method.md
§5.2), in torch: batched, on any device.

resampy 0.2.2 interpolates each output sample from a Kaiser-windowed sinc table (64 zero
crossings, 512 entries per crossing, linear interpolation between entries). Today's resampy
(≥ 0.3) ships a different ``kaiser_best`` table and computes the output times another way,
which moves 48-kHz downsampling by up to 1e-3; hence this port. It picks the same table
entries with the same float64 arithmetic; only the float32 summation differs (resampy adds
the taps in sequence, torch in its own order), so the two agree to float32 rounding
(tests/audio/test_legacy_reference.py derives the bound)."""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

# resampy 0.2.2's kaiser_best filter, as its documentation and data file give it.
KAISER_BEST_ZEROS = 64
KAISER_BEST_PRECISION = 9  # 2**9 table entries per zero crossing
KAISER_BEST_BETA = 14.769656459379492
KAISER_BEST_ROLLOFF = 0.9475937167399596
# Outputs per block: the [B, block, 2·taps] float32 temporaries stay near the CPU's cache
# (2.3 MB per clip); larger blocks ran slower here, smaller ones pay per-op overhead.
_BLOCK_OUTPUTS = 1 << 12


@functools.lru_cache(maxsize=1)
def kaiser_best_table() -> np.ndarray:
    """The right half of resampy 0.2.2's ``kaiser_best`` filter, ``[64·512 + 1]`` float64:
    ``rolloff · sinc(rolloff · t) · kaiser(t)`` at ``t = 0, 1/512, …, 64`` zero crossings.
    Rebuilt from its parameters (``resampy.filters.sinc_window`` with SciPy's Kaiser window),
    it equals the table resampy 0.2.2 stores to within 3e-16."""
    from scipy.signal import get_window

    n = (1 << KAISER_BEST_PRECISION) * KAISER_BEST_ZEROS
    sinc = KAISER_BEST_ROLLOFF * np.sinc(KAISER_BEST_ROLLOFF * np.linspace(0, KAISER_BEST_ZEROS, num=n + 1))
    taper = get_window(("kaiser", KAISER_BEST_BETA), 2 * n + 1, fftbins=False)[n:]
    return taper * sinc


def resampled_length(num_samples: int, sr_in: int, sr_out: int) -> int:
    """``ceil(num_samples · sr_out / sr_in)`` in librosa 0.8.1's float arithmetic: the length
    ``librosa.resample(fix=True)`` returns."""
    return int(np.ceil(num_samples * (float(sr_out) / sr_in)))


def _wing(frac: np.ndarray, step: int, num_table: int) -> tuple[np.ndarray, np.ndarray]:
    """Table offset and interpolation factor of one wing for every output, with resampy's
    float64 operations in its order."""
    index_frac = frac * num_table
    offset = index_frac.astype(np.int64)  # frac >= 0: truncation is int()
    return offset, index_frac - offset


def _phase_table(table: np.ndarray, step: int, taps: int) -> np.ndarray:
    """``[step + 1, taps]``: row ``o`` holds ``table[o + k·step]`` for the taps resampy uses
    at offset ``o`` (``k < (len(table) - o) // step``), zero after them."""
    nwin = table.shape[0]
    o, k = np.arange(step + 1)[:, None], np.arange(taps)[None, :]
    idx = o + k * step
    return np.where(k < (nwin - o) // step, table[np.minimum(idx, nwin - 1)], 0.0)


def resample_kaiser_best(wav: torch.Tensor, sr_in: int, sr_out: int) -> torch.Tensor:
    """``wav [..., S]`` float at ``sr_in`` → ``[..., ceil(S·sr_out/sr_in)]`` float32 at
    ``sr_out``: ``librosa.resample(wav, sr_in, sr_out, res_type="kaiser_best")`` of librosa
    0.8.1 with resampy 0.2.2 (each row on its own; on ``wav``'s device).

    resampy computes ``floor(S · ratio)`` samples (ratio = ``sr_out / sr_in`` in float64),
    output ``t`` at input time ``t / ratio`` accumulated by repeated addition (its drift is
    reproduced: it decides the table offsets when downsampling); librosa then zero-pads to
    the ``ceil``. ``ValueError`` when ``S · ratio < 1`` (resampy refuses such a signal)."""
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_in} and {sr_out}")
    num_in = wav.shape[-1]
    if sr_in == sr_out:
        return wav.to(torch.float32)
    ratio = float(sr_out) / sr_in
    num_out = int(num_in * ratio)  # resampy 0.2.2's length (librosa pads to the ceil below)
    if num_out < 1:
        raise ValueError(f"a signal of {num_in} samples is too short to resample from {sr_in} to {sr_out} Hz")

    table = kaiser_best_table()
    if ratio < 1:
        table = table * ratio  # the filter's gain when its cut-off is lowered
    num_table = 1 << KAISER_BEST_PRECISION
    scale = min(1.0, ratio)
    step = int(scale * num_table)
    taps = table.shape[0] // step  # the most taps a wing uses (at table offset 0)
    device = wav.device
    # Taps in float32 (computed from the float64 table), left wing stored reversed so that
    # one row of [left | right] weights meets x[n-taps+1 … n+taps] in order.
    phase = _phase_table(table, step, taps)
    slope = _phase_table(np.append(np.diff(table), 0.0), step, taps)
    tables = [
        torch.from_numpy(np.ascontiguousarray(t, dtype=np.float32)).to(device)
        for t in (phase[:, ::-1], slope[:, ::-1], phase, slope)
    ]
    # resampy's time register: 0, then += 1/ratio per output. cumsum adds in sequence, so
    # these are its float64 values bit for bit (they decide the table offsets).
    times = np.cumsum(np.concatenate(([0.0], np.full(num_out - 1, 1.0 / ratio))))
    first = times.astype(np.int64)  # the newest input sample at or before each output
    frac = scale * (times - first)
    wings = (_wing(frac, step, num_table), _wing(scale - frac, step, num_table))  # x[n-i] and x[n+1+k]

    # Output t reads x[n_t - taps + 1 … n_t + taps]: a row of the zero-padded signal's
    # windows; taps past either end meet the padding, as resampy's loop bounds skip them.
    x = wav.reshape(-1, num_in).to(device=device, dtype=torch.float32)
    windows = F.pad(x, (taps - 1, taps)).unfold(-1, 2 * taps, 1)  # [B, S + 1, 2·taps] (a view)
    out = x.new_empty(x.shape[0], num_out)
    for b0 in range(0, num_out, _BLOCK_OUTPUTS):
        b1 = min(b0 + _BLOCK_OUTPUTS, num_out)
        weight = x.new_empty(b1 - b0, 2 * taps)
        for w, (offset, eta), (values, slopes) in zip(
            (weight[:, :taps], weight[:, taps:]), wings, (tables[:2], tables[2:])
        ):
            o = torch.from_numpy(offset[b0:b1]).to(device)
            e = torch.from_numpy(eta[b0:b1].astype(np.float32)).to(device)[:, None]
            torch.addcmul(values[o], e, slopes[o], out=w)  # resampy's interpolated taps
        rows = windows[:, torch.from_numpy(first[b0:b1]).to(device)]  # [B, N, 2·taps]
        out[:, b0:b1] = (rows * weight).sum(-1)
    length = resampled_length(num_in, sr_in, sr_out)
    out = F.pad(out, (0, max(0, length - num_out)))[:, :length]
    return out.reshape(*wav.shape[:-1], length)
