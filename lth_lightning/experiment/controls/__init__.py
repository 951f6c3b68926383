"""The science a ticket is checked against: the controls (their registry and what each is made from), pruning
at initialization as published and its ablations, and the batch those methods score on."""
