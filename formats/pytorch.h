/* pytorch.h: extras of the PyTorch (.bin/.pt zip + pickle) reader beyond the entry points in reader.h. */
#ifndef MUSE_PYTORCH_H
#define MUSE_PYTORCH_H

#include "reader.h"

/*
 * CRC policy of the PyTorch reader. At open, every entry the reader
 * interprets is CRC-checked: data.pkl, byteorder, version, .format_version,
 * .storage_alignment. Storage entries (data/<key>, the bulk of the file) are
 * checked lazily, once per storage, the first time a tensor on them is read
 * through muse_reader_read (the answer is cached, so tied weights cost one
 * pass). Borrowed views (muse_reader_view) are NOT checked: a caller that
 * streams views and wants the guarantee calls this first.
 *
 * Checks the CRC-32 of every storage entry any tensor of r uses; r must come
 * from muse_pytorch_open or muse_pytorch_open_index.
 */
muse_status muse_pytorch_verify(muse_reader *r, muse_err *err);

#endif
