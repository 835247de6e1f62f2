# ssic — common tasks. Everything runs inside a local virtualenv (.venv) made by `make install`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch 2.14.1 + torchvision 0.29.1 are what ultralytics needs; on a CPU-only machine with a
# network, `make install TORCH_INDEX=--index-url=https://download.pytorch.org/whl/cpu` is smaller.
TORCH_INDEX ?=
OUT    := build

.PHONY: install demo test test-all bench-speed bench-rd bench-rd-holdout bench-effort bench-roi fuzz clean help

help:
	@echo "make install      create $(VENV) and install ssic with its test and detector extras"
	@echo "make demo         install, then encode / inspect / decode examples/kodim23.png into $(OUT)/"
	@echo "make test         install, then run the fast tests (the slow marker deselected)"
	@echo "make test-all     install, then run every test, the slow ones too"
	@echo "make bench-speed  encode/decode/partial-decode timings and peak memory (prints a table)"
	@echo "make bench-rd     Kodak rate-distortion of the shipped weights (real bitstreams)"
	@echo "make bench-rd-holdout  the same on 24 held-out COCO val2017 photos (python -m bench.holdout)"
	@echo "make bench-effort encoder effort levels 0-9 on Kodak: time and BD-rate per level (hours; resumable)"
	@echo "make bench-roi    COCO region-of-interest, boundary, downstream-AP and partial-decode benchmark"
	@echo "make fuzz         10 000 damaged/forged .ssb files through read + decode; counts by outcome"

install: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_INDEX) torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[yolo,crypto,test]'
	touch $@

demo: install
	mkdir -p $(OUT)
	$(BIN)/ssic encode examples/kodim23.png -o $(OUT)/kodim23.ssb -q 4 --detector grid -v
	$(BIN)/ssic inspect $(OUT)/kodim23.ssb
	$(BIN)/ssic decode $(OUT)/kodim23.ssb -o $(OUT)/kodim23.png
	$(BIN)/ssic decode $(OUT)/kodim23.ssb -o $(OUT)/kodim23-tile.png --groups tile
	@echo "wrote $(OUT)/kodim23.ssb, $(OUT)/kodim23.png and $(OUT)/kodim23-tile.png"

test: install
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q -m ""

bench-speed: install
	$(BIN)/python -m bench.speed --out bench/results/speed.json

bench-rd: install bench/setup.sh
	sh bench/setup.sh
	$(BIN)/python -m bench.rd --out bench/results/rd_kodak.json

bench-rd-holdout: install bench/setup.sh
	sh bench/setup.sh
	$(BIN)/python -m bench.holdout --out runs/holdout
	$(BIN)/python -m bench.rd --photos runs/holdout --out bench/results/rd_holdout.json

bench-effort: install
	$(BIN)/python -m bench.effort --qualities 2,6 --threads 2

bench-roi: install bench/setup.sh
	sh bench/setup.sh
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m bench.roi --out bench/results/roi_coco.json

fuzz: install
	$(BIN)/python -m bench.fuzz --cases 10000 --out bench/results/fuzz.json

clean:
	rm -rf $(OUT) .pytest_cache
