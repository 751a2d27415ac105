"""EDM math (pure torch): sigma schedules, samplers, losses, patch geometry."""
