"""The models: :mod:`.mlp` (the notebook's MLP and LeNet-300-100) and :mod:`.classifier` (``LotteryClassifier``,
the LightningModule wrapping any classification network)."""
