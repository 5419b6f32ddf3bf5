"""Per-region heads: pooling (RoIAlign), the box and mask heads, and the RoI heads that
run them."""
