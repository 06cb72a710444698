"""What people read: figures, the audit, the study's statistical model."""
