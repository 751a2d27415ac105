"""Networks (pure torch): SongUNet, EDM preconditioning, PhysicsNeMo checkpoint import."""
