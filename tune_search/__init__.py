"""Ray Tune search over learning-rate schedules with the fitted law as surrogate."""
