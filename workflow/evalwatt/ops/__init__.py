"""What users run: the evalwatt command, status, submit, staging."""
