"""The analyzer service: worker, consumer loop, metrics, the embedded pipeline."""
