"""Matchmaker backends; each implements :class:`rpcmm.matchmaker.Matchmaker`."""
