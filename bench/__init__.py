"""ssic's maintained benchmarks: one module each, run from the repository root.

    python -m bench                      # this list
    python -m bench.rd --help            # Kodak (or held-out) rate-distortion vs the classic codecs
    python -m bench.holdout              # build the held-out photo set (24 COCO val2017 photos)
    python -m bench.speed                # encode / decode / partial-decode times and peak memory
    python -m bench.effort               # encoder effort levels 0-9: time and BD-rate per level
    python -m bench.roi                  # COCO region of interest: rate, boundary, person AP50, time
    python -m bench.tiles                # 24 MP in bounded memory; rate cost of tile seams
    python -m bench.remote_fetch         # bytes and requests to decode one group over HTTP (nginx)
    python -m bench.portability          # the same files decoded under other CPU kernels / threads
    python -m bench.fuzz                 # damaged and forged .ssb files through read + decode
    python -m bench.detectors            # detector speed and the image area their groups cover

Each writes its summary (JSON, sometimes Markdown and one plot) to ``bench/results/`` and prints
Markdown tables; progress goes to stderr. The Makefile's ``bench-*`` targets run the long ones.
Shared pieces: ``bench.common`` (data, results), ``bench.classic`` (the command-line codecs),
``bench.bdrate`` (Bjøntegaard deltas). Experiments that are not maintained live in ``research/``.
"""
