"""Release tooling: ship new default weights (``ship``), write their cards (``weights_card``) and
compare the benchmark figures before and after (``ship_report``).

    python -m tools.release.ship WEIGHTS --dry-run
    python -m tools.release.weights_card --from-rd bench/results/rd_kodak.json
    python -m tools.release.ship_report --before HEAD

They edit data (``ssic_cli/weights_data/``: the weights file and ``manifest.json``; the cards in
``weights/``; ``bench/results/``), never Python source.
"""
