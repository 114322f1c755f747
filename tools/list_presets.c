/* list_presets.c - prints the library's model presets (clt_model_preset_name), one a line, for the bash completion. */
#include <stdio.h>

#include "cltrain.h"

int main(void)
{
    for (int i = 0; clt_model_preset_name(i); i++) printf("%s\n", clt_model_preset_name(i));
    return 0;
}
