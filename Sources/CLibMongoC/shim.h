#ifndef RSINIT_CLIBMONGOC_SHIM_H
#define RSINIT_CLIBMONGOC_SHIM_H

#include <bson/bson.h>
#include <mongoc/mongoc.h>

// rsinit is written against the 1.x ABI (pkg-config libmongoc-1.0). libmongoc 2.x renamed its pkg-config files and
// headers; fail here with a clear message instead of a confusing missing-symbol error later.
#if MONGOC_MAJOR_VERSION != 1
#error "rsinit expects libmongoc 1.x (pkg-config libmongoc-1.0); install libmongoc-dev 1.x"
#endif

// bson_error_t.message imports as a 504-element tuple; this returns it as a C string.
static inline const char *rsinit_bson_error_message(const bson_error_t *error) { return error->message; }

// bson_t imports as OpaquePointer (Debian builds libbson with BSON_EXTRA_ALIGN), so its `len` field is unreachable
// from Swift; read it here.
static inline uint32_t rsinit_bson_length(const bson_t *document) { return document->len; }

#endif
