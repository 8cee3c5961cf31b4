#include <stdio.h>
int main(void) { puts("beaconrt"); return 0; }
