"""Training: the trainer state, the loop, resume, schedules, EMA, metrics, signals and several processes."""
