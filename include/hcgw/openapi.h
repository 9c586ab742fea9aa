/*
 * The OpenAPI description of hcgw (docs/openapi.yaml), built into the library at build time
 * (cmake/embed.cmake generates openapi.c from the file), so that GET /openapi.yaml serves
 * exactly the document the binary was built with, and no file has to be installed beside it.
 */
#ifndef HCGW_OPENAPI_H
#define HCGW_OPENAPI_H

#include <stddef.h>

/** docs/openapi.yaml, byte for byte, followed by a NUL. Read-only; any thread. */
extern const char gw_openapi_yaml[];

/** The number of bytes of gw_openapi_yaml, without the NUL. */
extern const size_t gw_openapi_yaml_len;

#endif
