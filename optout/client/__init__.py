"""The dataset-builder client. Imports nothing from Django: it runs where Django is not installed."""
