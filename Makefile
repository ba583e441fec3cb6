# muse: one plain Makefile. `make` builds bin/muse; `make test` runs every test tier.
CC      ?= gcc
CLANG   ?= clang
NVCC    ?= nvcc
HIPCC   ?= hipcc
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0)

# No FMA contraction anywhere: reference paths must round exactly as the formats' own code does.
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Wno-format-truncation -ffp-contract=off \
               -fopenmp -DMUSE_VERSION='"$(VERSION)"'
CFLAGS  ?= -O2 -g
LIBS    := -ljansson -lcrypto -larchive -lpcre2-8 -lutf8proc -llapacke -lopenblas -lz -lm -lpthread

LIB_SRC     := $(wildcard lib/*.c)
FORMATS_SRC := $(wildcard formats/*.c)
QUANT_SRC   := $(wildcard quant/*.c)
CMD_SRC     := $(wildcard cmd/*.c)
CORE_SRC    := $(LIB_SRC) $(FORMATS_SRC) $(QUANT_SRC)
HDRS        := $(wildcard lib/*.h formats/*.h quant/*.h cmd/*.h)

OBJ      := $(patsubst %.c,build/rel/%.o,$(CORE_SRC) $(CMD_SRC))
ASAN_OBJ := $(patsubst %.c,build/asan/%.o,$(CORE_SRC))
ASAN_CMD := $(patsubst %.c,build/asan/%.o,$(CMD_SRC))
SAN      := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,build/asan/tests/%,$(UNIT_SRC))
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRC))
FUZZ_CORE_OBJ := $(patsubst %.c,build/fuzz/%.o,$(CORE_SRC))

.SECONDARY:
.PHONY: all deps test unit fuzz fuzz-build bench demo clean install asan
all: bin/muse bin/muse-convert bin/muse-quantize

bin/muse: $(OBJ)
	@mkdir -p bin
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $(OBJ) $(LIBS)

bin/muse-convert bin/muse-quantize: bin/muse
	ln -sf muse $@

build/rel/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -c -o $@ $<

# Sanitized build used by the tests (ASan + UBSan, every UB report fatal).
asan: build/asan/muse $(UNIT_BIN)
build/asan/muse: $(ASAN_OBJ) $(ASAN_CMD)
	$(CC) $(BASE_CFLAGS) -O1 -g $(SAN) -o $@ $^ $(LIBS)

build/asan/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -O1 -g $(SAN) -c -o $@ $<

build/asan/tests/%: tests/unit/%.c $(wildcard tests/unit/*.h) $(ASAN_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -O1 -g $(SAN) -Itests/unit -o $@ $< $(ASAN_OBJ) $(LIBS)

# Benchmarks: tests/bench/bench_*.c linked against the release objects; scripts/bench.sh prints the table.
BENCH_SRC := $(wildcard tests/bench/bench_*.c)
BENCH_BIN := $(patsubst tests/bench/%.c,build/rel/bench/%,$(BENCH_SRC))
REL_CORE_OBJ := $(patsubst %.c,build/rel/%.o,$(CORE_SRC))
build/rel/bench/%: tests/bench/%.c $(REL_CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $< $(REL_CORE_OBJ) $(LIBS)

# libFuzzer targets: one per reader; the corpus under tests/fuzz/corpus/<target>/ replays in `make test`.
fuzz-build: $(FUZZ_BIN)
build/fuzz/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CLANG) $(BASE_CFLAGS) -Wno-unknown-warning-option -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -c -o $@ $<
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_common.h $(FUZZ_CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CLANG) $(BASE_CFLAGS) -Wno-unknown-warning-option -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -o $@ $< $(FUZZ_CORE_OBJ) $(LIBS)

# Run one fuzzer: make fuzz FUZZ=safetensors SECONDS=600
FUZZ ?= safetensors
SECONDS ?= 60
fuzz: build/fuzz/fuzz_$(FUZZ)
	@mkdir -p build/fuzz/corpus-$(FUZZ)
	build/fuzz/fuzz_$(FUZZ) -max_total_time=$(SECONDS) -rss_limit_mb=2048 -timeout=10 \
		build/fuzz/corpus-$(FUZZ) tests/fuzz/corpus/$(FUZZ)

deps:
	@bash scripts/deps.sh

test: deps all asan fuzz-build
	@bash tests/run.sh

unit: asan
	@for t in $(UNIT_BIN); do $$t; done

bench: all $(BENCH_BIN)
	@bash scripts/bench.sh

demo: deps all
	@bash scripts/demo.sh

PREFIX ?= /usr/local
install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 bin/muse $(DESTDIR)$(PREFIX)/bin/muse
	ln -sf muse $(DESTDIR)$(PREFIX)/bin/muse-convert
	ln -sf muse $(DESTDIR)$(PREFIX)/bin/muse-quantize

clean:
	rm -rf build bin
