// oneDNN 2.6 (Debian libdnnl-dev): no pkg-config file, so the module map links "dnnl" by name.
#include <oneapi/dnnl/dnnl.h>
