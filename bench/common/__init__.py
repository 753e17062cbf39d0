"""Helpers more than one bench uses: the command line (`cli`), the emulator and worker processes
(`stack`), the emulator ledger's arithmetic (`analysis`), following jobs to their end
(`trackers`) and how a goal is printed (`report`)."""
