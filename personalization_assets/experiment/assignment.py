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

from personalization_assets.audience.eligibility import CONTACTABLE, HOLD_NOT_CHECKED
from personalization_assets.campaign.config import NO_EMAIL_ARM

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)
HOLD_VARIANT_BLOCKED = "variant_blocked"
HOLD_VARIANT_REJECTED = "variant_rejected"  # approved by the screen, rejected by a reviewer
HOLD_NO_EMAIL = "no_email_holdout"  # assigned to the arm that is sent nothing; its outcomes are still measured
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


def _utf8_columns(values: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each string's UTF-8 bytes as a (width, n) uint8 matrix, zero-padded, and the byte lengths.

    The whole column is joined and encoded once (C loops, no per-row Python) and cut again at the
    separators; a column whose strings contain the separator (NUL) is encoded string by string.
    """
    strings = pd.Series(values, dtype=object)
    if len(strings) and pd.api.types.infer_dtype(strings, skipna=False) != "string":
        strings = strings.astype(str)
    items = strings.tolist()
    n = len(items)
    if n == 0:
        return np.zeros((0, 0), dtype=np.uint8), np.zeros(0, dtype=np.int64)
    joined = "\x00".join(items)
    if joined.count("\x00") == n - 1:
        blob = np.frombuffer(joined.encode("utf-8"), dtype=np.uint8)
        ends = np.append(np.flatnonzero(blob == 0), len(blob))
        starts = np.concatenate(([0], ends[:-1] + 1))
        lengths = ends - starts
        width = int(lengths.max())
        padded = np.append(blob, np.uint8(0))  # position len(blob): a zero for the rows already done
        if int(lengths.min()) == width:  # equal lengths (the usual ids): one strided view, no gather
            return np.ascontiguousarray(padded.reshape(n, width + 1)[:, :width].T), lengths.astype(np.int64)
        columns = np.zeros((width, n), dtype=np.uint8)
        for position in range(width):
            columns[position] = padded[np.where(position < lengths, starts + position, len(blob))]
        return columns, lengths.astype(np.int64)
    encoded = pd.Series(items, dtype=object).str.encode("utf-8")
    lengths = encoded.str.len().to_numpy(dtype=np.int64)
    width = max(int(lengths.max()), 1)
    matrix = encoded.to_numpy(dtype=f"S{width}").view(np.uint8).reshape(n, width)
    return np.ascontiguousarray(matrix.T), lengths


def _fnv1a_columns(seed: np.uint64, columns: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """FNV-1a from `seed` over each row's bytes (`columns[position]`, the first `lengths` of them)."""
    state = np.full(len(lengths), seed, dtype=np.uint64)
    shortest = int(lengths.min()) if len(lengths) else 0
    with np.errstate(over="ignore"):
        for position, column in enumerate(columns):
            byte = column.astype(np.uint64)
            if position < shortest:  # every row still has bytes here: no mask needed
                state ^= byte
                state *= FNV_PRIME
            else:
                np.copyto(state, (state ^ byte) * FNV_PRIME, where=position < lengths)
    return state


def _salt_seed(salt: str) -> np.uint64:
    salt_bytes = np.frombuffer(salt.encode("utf-8") + b"\x00", dtype=np.uint8)
    return _fnv1a(np.array([FNV_OFFSET]), salt_bytes[None, :], np.array([len(salt_bytes)]))[0]


def stable_hashes64(values: pd.Series | np.ndarray, salts: list[str]) -> list[np.ndarray]:
    """`stable_hash64` of the same strings under several salts; the strings are encoded once."""
    columns, lengths = _utf8_columns(values)
    return [_splitmix64(_fnv1a_columns(_salt_seed(salt), columns, lengths)) for salt in salts]


def stable_hash64(values: pd.Series | np.ndarray, salt: str) -> np.ndarray:
    """A 64-bit hash of each string, salted; identical on every machine and library version."""
    return stable_hashes64(values, [salt])[0]


def _to_unit_interval(hashed: np.ndarray) -> np.ndarray:
    return (hashed >> np.uint64(11)).astype(np.float64) / float(2**53)


def unit_interval(values: pd.Series | np.ndarray, salt: str) -> np.ndarray:
    """Uniform numbers in [0, 1) from the top 53 bits of the hash (exact in a float64)."""
    return _to_unit_interval(stable_hash64(values, salt))


def unit_intervals(values: pd.Series | np.ndarray, salts: list[str]) -> list[np.ndarray]:
    """`unit_interval` under several salts, encoding the strings once."""
    return [_to_unit_interval(hashed) for hashed in stable_hashes64(values, salts)]


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
    arms: pd.Categorical | None = None,
) -> pd.DataFrame:
    """Each customer's arm and variant, and whether they are sent it.

    The arm is the salted hash's (`assign_arms`) unless `arms` gives each customer's (a rollout's
    chosen arms, categories in the campaign's arm order).

    `verdicts.decision` is what may be sent: approved, blocked, or rejected by a reviewer.
    A customer of the no-email arm (`NO_EMAIL_ARM`) has no variant and is held out with
    HOLD_NO_EMAIL: sent nothing, and measured.
    A customer whose variant was blocked or rejected is held out (`sent = False`, `hold_reason`), never sent
    anything else in its place: swapping in another message would bias the arm comparison. A
    customer with a contact hold (`customer_segments.contact_hold`: suppressed, no consent, no
    address, ...) keeps its arm and is held out with that reason, which comes first.
    """
    if arms is None:
        arms = assign_arms(customer_segments["customer_id"], experiment_id, weights)
    # Customer-level work is done on integer codes: each customer's (segment, arm) cell indexes a
    # small table of variants and decisions, instead of a million-row merge on text keys.
    segment_codes, segment_values = pd.factorize(customer_segments["segment"], use_na_sentinel=False)
    segment_ids = np.array([str(s) for s in np.asarray(segment_values, dtype=object)], dtype=object)
    arm_ids = np.array([str(a) for a in arms.categories], dtype=object)
    decisions = variants[["segment", "arm", "variant_id"]].merge(
        verdicts[["segment", "variant_id", "decision"]], on=["segment", "variant_id"], how="left", validate="one_to_one"
    )
    missing = sorted(set(segment_ids) - set(decisions["segment"]))
    if missing:
        raise ValueError(
            f"no message variants for segments {missing}: materialize message_variants and safety_verdicts "
            f"for those segment partitions first"
        )
    if decisions.duplicated(["segment", "arm"]).any():
        raise pd.errors.MergeError("Merge keys are not unique in right dataset; not a many-to-one merge")
    no_email_rows = pd.DataFrame({"segment": segment_ids, "arm": NO_EMAIL_ARM, "variant_id": NO_EMAIL_ARM, "decision": HOLD_NO_EMAIL})
    table = (pd.concat([decisions, no_email_rows], ignore_index=True) if NO_EMAIL_ARM in arm_ids else decisions)
    table = table.set_index(["segment", "arm"]).reindex(pd.MultiIndex.from_product([segment_ids, arm_ids]))
    cell = segment_codes.astype(np.intp) * len(arm_ids) + arms.codes.astype(np.intp)
    variant_id = table["variant_id"].to_numpy(dtype=object)[cell]
    segment, arm = segment_ids[segment_codes], arm_ids[arms.codes]
    no_variant = pd.isna(variant_id)
    if no_variant.any():
        lacking = pd.DataFrame({"segment": segment[no_variant], "arm": arm[no_variant]})
        pairs = lacking.drop_duplicates().to_records(index=False).tolist()
        raise ValueError(f"no variant for (segment, arm) pairs {pairs}: check the campaign's tones and arms")
    # An unscreened variant (no verdict) counts as blocked: fail closed.
    decision = table["decision"].to_numpy(dtype=object)[cell]
    approved = decision == "approved"
    variant_hold = np.where(approved, None, np.select([decision == "rejected", decision == HOLD_NO_EMAIL],
                                                      [HOLD_VARIANT_REJECTED, HOLD_NO_EMAIL], HOLD_VARIANT_BLOCKED))
    if "contact_hold" not in customer_segments.columns:
        raise ValueError("customer_segments has no contact_hold column: materialize customers and customer_segments for this "
                         "wave first (nobody is assigned without a contact check)")
    contact_hold = customer_segments["contact_hold"].to_numpy(dtype=object)
    unchecked = pd.isna(contact_hold)  # never checked: held out, fail closed
    contact_hold = np.where(unchecked, HOLD_NOT_CHECKED, contact_hold)
    contactable = contact_hold == CONTACTABLE
    frame = pd.DataFrame(
        {
            "wave": wave,
            "customer_id": customer_segments["customer_id"].to_numpy(),
            "segment": segment,
            "arm": arm,
            "variant_id": variant_id,
            "sent": approved & contactable,
            "hold_reason": np.where(contactable, variant_hold, contact_hold),
        }
    )
    return frame[list(ASSIGNMENT_COLUMNS)]
