"""The pruning math, pure and Lightning-free: masks in, masks out.

Modules: :mod:`.magnitude` (global and layer-wise magnitude pruning, the masks' bookkeeping), :mod:`.selection`
(exact top-k in linear time and bounded memory), :mod:`.saliency` (SNIP, GraSP, SynFlow scores), :mod:`.targets`
(which tensors a ticket prunes), :mod:`.packing` (masks at one bit per weight) and :mod:`.stability` (linear
mode connectivity).
"""
