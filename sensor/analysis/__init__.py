"""Analysis on per-sample features: phase segmentation (phases) and per-hold metrics (metrics)."""
