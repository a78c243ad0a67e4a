//! Every integration test of this crate in one binary (one link, one file to carry to the
//! GPU machine); each file below is a module, named after the kernel or feature it tests.

mod common;
mod engine_common;

mod advantage_edge;
mod advantage_flat;
mod advantage_hostile;
mod advantage_treepo;
mod cli_flow;
mod cli_run;
mod cli_sample;
mod config_hostile;
mod config_names;
mod distributed;
mod engine_determinism;
mod engine_parity;
mod engine_pool;
mod engine_sampler;
mod engine_tree;
mod filters;
mod hf_parity;
mod kill_harness;
mod loss;
mod metrics;
mod metrics_log;
mod model_checkpoint;
mod model_sizes;
mod packed;
mod run_checkpoint;
mod tasks_api;
mod tasks_countdown;
mod tasks_fuzz;
mod tasks_math;
mod tasks_parity_arith;
mod train_edges;
mod train_gradients;
mod train_optim;
mod train_packed;
mod train_trajectory;
