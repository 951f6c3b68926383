"""The data: IDX files, their download, in-memory batches and the DataModules (Fashion-MNIST, MNIST).

Modules: :mod:`.idx` (the IDX format), :mod:`.download` (mirrors, md5s, atomic writes), :mod:`.loader`
(``TensorBatches``: batches sliced from tensors, sharded across processes) and :mod:`.datamodule`.
"""
