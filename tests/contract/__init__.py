"""The matchmaker contract suite: the same tests against every backend."""
