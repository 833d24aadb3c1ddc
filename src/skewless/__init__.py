"""skewless: a Kubeflow-native ranking system whose TFT transform ships inside the model."""

__version__ = "0.1.0"
