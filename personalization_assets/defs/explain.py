"""Explainability stage: k-means segments proposed from the customer features, explained by a tree."""

import dagster as dg
import pandas as pd

from personalization_assets.defs.partitions import per_wave
from personalization_assets.explain.models import explore_clusters


@dg.asset(**per_wave())
def segment_exploration(context: dg.AssetExecutionContext, customer_segments: pd.DataFrame) -> pd.DataFrame:
    """k-means on the customer features (k by silhouette, on a seeded sample) and a depth-3 tree
    that explains the clusters: proposes segments, does not drive the partitions."""
    frame = explore_clusters(customer_segments)
    frame.insert(0, "wave", context.partition_key)
    first = frame.iloc[0] if len(frame) else None
    context.add_output_metadata({
        "dagster/row_count": len(frame),
        **({} if first is None else {
            "k": int(first["k"]), "silhouette": float(first["silhouette"]), "tree_accuracy": float(first["tree_accuracy"]),
            "sample_size": int(first["sample_size"]),
            "tree_rules": dg.MetadataValue.md("\n".join(f"- cluster {r.cluster}: {r.tree_rule}" for r in frame.itertuples())),
        }),
    })
    return frame
