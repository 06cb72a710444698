"""One module per ``evalwatt`` subcommand: ``add(subparsers)`` declares its arguments and
``run(args)`` does it, returning the exit code. They parse, call a stage's functions and print;
the work is in the stages (evalwatt.ops.cli puts them together)."""
