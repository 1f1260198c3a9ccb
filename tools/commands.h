/* tools/commands.h - the subcommand table of `linnx`, one line per subcommand:
 *   LINNX_COMMAND(name, function, "one-line summary")
 * The function lives in a tools/cmd_<family>.c file. */
LINNX_COMMAND(key, cmd_key, "print JAX keys: from a seed, fold_in, split, Linen make_rng paths")
LINNX_COMMAND(random, cmd_random, "sample as JAX does: uniform, normal, randint, permutation, categorical, ...")
LINNX_COMMAND(init, cmd_init, "run a Flax initializer (lecun_normal, variance_scaling, ...)")
LINNX_COMMAND(params, cmd_params, "print the variables a module (SPEC like 'linen.Dense(8)') gets at init")
LINNX_COMMAND(example, cmd_example, "run a bridge worked example (nnx-inside-linen, linen-inside-nnx), print its output")
LINNX_COMMAND(inspect, cmd_inspect, "print a checkpoint (Flax msgpack or safetensors) as a table")
LINNX_COMMAND(convert, cmd_convert, "convert a checkpoint between msgpack/safetensors and Linen/NNX/MaxText layouts")
LINNX_COMMAND(sample, cmd_sample, "generate text with the showcase llama2-style decoder (KV cache; greedy/temperature/top-k)")
LINNX_COMMAND(train-lm, cmd_train_lm, "the showcase decoder's training run on bytes of text: data, baselines, progress, loss curve")
LINNX_COMMAND(grad, cmd_grad, "jax.grad from the shell: the loss and every parameter's gradient on given data")
LINNX_COMMAND(train, cmd_train, "train a module on given data with an optax optimizer, one `step K loss V` line per step")
