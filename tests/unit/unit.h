/* unit.h: the smallest test harness: CHECK records failures, each TEST prints one PASS/FAIL/SKIP line. */
#ifndef MUSE_UNIT_H
#define MUSE_UNIT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int unit_failures_total;
static int unit_case_failed;
static const char *unit_file_name = "unit";

#define CHECK(cond)                                                                                    \
	do {                                                                                           \
		if (!(cond)) {                                                                         \
			if (!unit_case_failed)                                                         \
				printf("#   %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);        \
			unit_case_failed++;                                                            \
		}                                                                                      \
	} while (0)

#define CHECK_EQ_U64(a, b)                                                                            \
	do {                                                                                          \
		unsigned long long _a = (unsigned long long)(a), _b = (unsigned long long)(b);        \
		if (_a != _b) {                                                                       \
			if (!unit_case_failed)                                                        \
				printf("#   %s:%d: %s == %llu, expected %llu\n", __FILE__, __LINE__, #a, \
				       _a, _b);                                                       \
			unit_case_failed++;                                                           \
		}                                                                                     \
	} while (0)

/* Runs fn as one test case and prints its result line. */
#define RUN(fn)                                                                   \
	do {                                                                      \
		unit_case_failed = 0;                                             \
		fn();                                                             \
		printf("%s: %s/%s\n", unit_case_failed ? "FAIL" : "PASS", unit_file_name, #fn); \
		if (unit_case_failed)                                             \
			unit_failures_total++;                                    \
	} while (0)

#define SKIP(fn, why) printf("SKIP: %s/%s: %s\n", unit_file_name, #fn, why)

#define UNIT_MAIN_END() return unit_failures_total ? 1 : 0

#endif
