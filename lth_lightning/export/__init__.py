"""Shipping a ticket: :mod:`.ticket` (``export_ticket``/``load_ticket``: a round's masks and weights as one
file) and :mod:`.sparse` (linear layers whose pruned weights are stored in CSR form)."""
