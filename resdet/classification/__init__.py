"""Classification pretraining: datasets, model, training loop, evaluation, export and curves."""
