#include <cblas.h>
// Declared by OpenBLAS's cblas.h in Debian; repeated defensively for other layouts.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
