# Helpers for the multi-rank tests (sourced after common.sh).
NORM="$PYTHON $BRT_SOURCE_DIR/tests/tools/normalize_results.py"
# MPI traffic stays on this machine
export OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo

# brt_mpirun NP [beaconrt args...]: beaconrt under mpirun, bounded in time
brt_mpirun() {
    np=$1; shift
    timeout -k 10 300 mpirun -np "$np" "$BRT_BIN" "$@"
}

# run_layout "NP [flags]" OUT [beaconrt run args...]: one batch run in the given layout
run_layout() {
    layout=$1; out=$2; shift 2
    # shellcheck disable=SC2086
    set -- $layout -- "$@"
    np=$1; shift
    flags=""
    while [ "$1" != "--" ]; do flags="$flags $1"; shift; done
    shift
    rm -f "$out"
    # shellcheck disable=SC2086
    brt_mpirun "$np" run "$@" --output "$out" --quiet $flags 2>"$out.err" || { cat "$out.err" >&2; fail "run in layout '$layout' failed"; }
}
