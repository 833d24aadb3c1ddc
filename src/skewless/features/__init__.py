"""The feature store (Feast): feature views from the spec, point-in-time joins, online lookup."""
