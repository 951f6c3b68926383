"""What presents stored runs, called once they are stored: the TensorBoard summaries and their layout, the
plots and their colours, an experiment's seeds aggregated and drawn, experiments compared."""
