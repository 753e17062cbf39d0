"""Helpers more than one bench uses: the command line (`cli`), the emulator and worker processes
(`stack`), our producer and workers' command lines (`ours`), the emulator ledger's arithmetic
(`analysis`), following jobs to their end (`trackers`), goals as data (`goals`) and how a goal
and a figure are printed (`report`)."""
