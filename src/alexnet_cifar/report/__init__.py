"""Looking at a run: report.html with its plots, the model summary, the lesson's own printed run."""
