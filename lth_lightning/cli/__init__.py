"""The command line: :mod:`.lottery_cli` (``LotteryCLI``, ``lth fit``) and :mod:`.commands` (``lth`` and its
other commands)."""
