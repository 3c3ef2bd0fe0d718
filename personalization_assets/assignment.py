"""Deterministic experiment assignment: a salted hash of (experiment id, customer id) into arms.

The hash is our own (FNV-1a over the UTF-8 bytes, then the splitmix64 finalizer), vectorized over
byte positions with numpy, so it never depends on a library's internal hash, on the order of the
input, or on which other customers are in the file: adding or reordering customers leaves every
existing customer in the same arm. The hash ignores the segment, so every segment is split by the
same weights in expectation (stratified by construction).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)
HOLD_VARIANT_BLOCKED = "variant_blocked"
ASSIGNMENT_COLUMNS = ("wave", "customer_id", "segment", "arm", "variant_id", "sent", "hold_reason")


def _fnv1a(state: np.ndarray, data: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """FNV-1a over each row's first `lengths[i]` bytes of the uint8 matrix `data`."""
    with np.errstate(over="ignore"):
        for position in range(data.shape[1]):
            active = position < lengths
            mixed = (state ^ data[:, position].astype(np.uint64)) * FNV_PRIME
            state = np.where(active, mixed, state)
    return state


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """Spread every input bit over the output: FNV alone leaves the high bits poorly mixed."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def stable_hash64(values: pd.Series | np.ndarray, salt: str) -> np.ndarray:
    """A 64-bit hash of each string, salted; identical on every machine and library version."""
    encoded = pd.Series(values, dtype=object).astype(str).str.encode("utf-8")
    lengths = encoded.str.len().to_numpy(dtype=np.int64)
    width = int(lengths.max()) if len(lengths) else 0
    matrix = encoded.to_numpy(dtype=f"S{max(width, 1)}").view(np.uint8).reshape(len(encoded), max(width, 1))
    salt_bytes = np.frombuffer(salt.encode("utf-8") + b"\x00", dtype=np.uint8)
    seed = _fnv1a(np.array([FNV_OFFSET]), salt_bytes[None, :], np.array([len(salt_bytes)]))[0]
    state = np.full(len(encoded), seed, dtype=np.uint64)
    return _splitmix64(_fnv1a(state, matrix, lengths))


def unit_interval(values: pd.Series | np.ndarray, salt: str) -> np.ndarray:
    """Uniform numbers in [0, 1) from the top 53 bits of the hash (exact in a float64)."""
    return (stable_hash64(values, salt) >> np.uint64(11)).astype(np.float64) / float(2**53)


def assign_arms(customer_ids: pd.Series, experiment_id: str, weights: Mapping[str, float]) -> pd.Categorical:
    """Arm of each customer: the hash's position among the cumulative weights. Nobody is dropped."""
    arms = list(weights)
    shares = np.array([weights[a] for a in arms], dtype=float)
    edges = np.cumsum(shares / shares.sum())
    position = np.searchsorted(edges, unit_interval(customer_ids.to_numpy(), experiment_id), side="right")
    codes = np.minimum(position, len(arms) - 1)  # guards the float edge at exactly 1.0
    return pd.Categorical.from_codes(codes, categories=arms)


def build_assignments(
    customer_segments: pd.DataFrame,
    variants: pd.DataFrame,
    verdicts: pd.DataFrame,
    *,
    experiment_id: str,
    weights: Mapping[str, float],
    wave: str,
) -> pd.DataFrame:
    """Each customer's arm and variant, and whether they are sent it.

    A customer whose variant was blocked is held out (`sent = False`, `hold_reason`), never sent
    anything else in its place: swapping in another message would bias the arm comparison.
    """
    arms = assign_arms(customer_segments["customer_id"], experiment_id, weights)
    frame = pd.DataFrame(
        {
            "wave": wave,
            "customer_id": customer_segments["customer_id"].to_numpy(),
            "segment": customer_segments["segment"].astype(str).to_numpy(),
            "arm": np.asarray(arms.astype(str)),
        }
    )
    decisions = variants[["segment", "arm", "variant_id"]].merge(
        verdicts[["segment", "variant_id", "decision"]], on=["segment", "variant_id"], how="left", validate="one_to_one"
    )
    missing = sorted(set(frame["segment"]) - set(decisions["segment"]))
    if missing:
        raise ValueError(
            f"no message variants for segments {missing}: materialize message_variants and safety_verdicts "
            f"for those segment partitions first"
        )
    frame = frame.merge(decisions, on=["segment", "arm"], how="left", validate="many_to_one")
    no_variant = frame["variant_id"].isna()
    if no_variant.any():
        pairs = frame.loc[no_variant, ["segment", "arm"]].drop_duplicates().to_records(index=False).tolist()
        raise ValueError(f"no variant for (segment, arm) pairs {pairs}: check the campaign's tones and arms")
    # An unscreened variant (no verdict) counts as blocked: fail closed.
    approved = frame["decision"].eq("approved").to_numpy()
    frame["sent"] = approved
    frame["hold_reason"] = np.where(approved, None, HOLD_VARIANT_BLOCKED)
    return frame[list(ASSIGNMENT_COLUMNS)]
