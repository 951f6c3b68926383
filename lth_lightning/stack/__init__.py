"""Many tickets at once: the ticket, its controls and its seeds trained as members of one stacked network.

Modules: :mod:`.network` (a network stacked along a leading member dimension, Lightning-free),
:mod:`.module` (``StackedClassifier``, the LightningModule of the members), :mod:`.callbacks`
(each member's early stopping and TensorBoard run) and :mod:`.batches` (members that read their
own data orders). The round loop that uses them is :mod:`lth_lightning.experiment.rounds.stacked`.
"""
