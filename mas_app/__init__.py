"""The `mas` command line: the top floor, which wires the engine (mas_engine), rigs and retarget together."""
