# Shared by the sbatch scripts of this folder (sourced; needs SLURM's environment). See docs/pretraining.md,
# "GPUs and many nodes".

# The first node of the allocation: it hosts the rendezvous (torchrun's c10d store, detectron2's and
# mmengine's TCP store).
r2o_head_node() {
    scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1
}

# A rendezvous port that differs between jobs sharing a head node (R2O_PORT overrides it).
r2o_port() {
    echo "${R2O_PORT:-$((20000 + SLURM_JOB_ID % 10000))}"
}

# Requeue this job (a no-op outside a requeueable job; SLURM may already be requeueing it).
r2o_requeue() {
    echo "r2o: requeueing job $SLURM_JOB_ID ($1)"
    scontrol requeue "$SLURM_JOB_ID" || echo "r2o: scontrol requeue failed; resubmit the job by hand" >&2
}

# Pretraining: after its job step ended, requeue when the trainer left OUTPUT_DIR/checkpoints/PREEMPTED
# (it stopped on a signal after writing its checkpoint); otherwise return the step's exit status.
# r2o_requeue_if_preempted OUTPUT_DIR STATUS
r2o_requeue_if_preempted() {
    local marker="$1/checkpoints/PREEMPTED"
    if [ -f "$marker" ]; then
        r2o_requeue "preempted: $(cat "$marker")"
        return 0
    fi
    return "$2"
}

# Fine-tunes (detectron2, mmseg) have no preemption handler: run "$@" and, when the batch shell gets
# SIGUSR1 (sbatch --signal=B:USR1@SECONDS), requeue the job; the requeued job resumes from the last
# periodic checkpoint (--resume). Returns the exit status of "$@".
r2o_run_requeue_on_usr1() {
    trap 'r2o_requeue "SIGUSR1: the time limit is near"' USR1
    "$@" &
    local pid=$! status=0
    while :; do
        status=0
        wait "$pid" || status=$?
        kill -0 "$pid" 2>/dev/null || break # still running: wait was interrupted by the trap
    done
    trap - USR1
    return "$status"
}
