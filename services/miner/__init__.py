"""The miner: one real model serving one subnet's task under one hotkey (agora.miner.v1.Miner).

    settings.py  MinerSettings
    sources.py   model aliases, local paths, hub ids; GGUF converted once into <cache>/models (services.common.cache)
    model.py     load_model(), CausalLM / Encoder, degrade() (a quality ladder), warm_up()
    packed.py    linear layers with oneDNN-packed weights (the CPU matmuls, ~2x torch's default)
    toys.py      adversarial "models": echo, noise
    tasks/       nextword (whole-word search over subword tokens), generate, translate, embed
    auth.py      signed envelopes; Authenticator: AllowAll, SignatureAuthenticator(stake_of)
    batcher.py   dynamic batching, stake-ordered bounded queue, deadlines
    engine.py    runs one batch of one call on the model (compute thread)
    server.py    the gRPC servicer (protos <-> the above), signs responses
    metrics.py   agora_miner_* Prometheus metrics
    client.py    MinerClient: what a validator uses to call a miner
    metagraph.py MetagraphCache: the subnet's permitted validators, refreshed from the block stream
    subnet.py    SubnetLink: the subnet's task, the registration check, serve_axon
    main.py      Miner (wiring; Miner.connect with a chain) and run_miner(settings)
"""
