"""Default: a small DDPM++ on the bundled 8x8 digits under the VP SDE; minutes on 2 CPU cores.

Every other config starts from this one and overrides a few fields. Any field can also be set on
the command line: `python train.py --config.training.n_steps=500`.
"""
import ml_collections

from models import unet


def get_config():
    config = ml_collections.ConfigDict()
    config.seed = 0  # all randomness (init, batches, noise, samples) derives from this

    config.data = data = ml_collections.ConfigDict()
    # digits | mnist | npz | folder | records (train.py prepare-data) | cifar10 | csv | series |
    # mixture | moons | swiss_roll | checkerboard
    data.name = "digits"
    data.path = ""  # file (npz, csv) or folder (folder, records) for the user's own data
    data.image_size = 0  # 0 keeps the native size; else an integer multiple of it
    data.centered = True  # model space [-1, 1] (True) or [0, 1] (False)
    data.dequantize = False  # uniform dequantisation (x + u) / 256 of 8-bit images in training
    data.random_flip = False  # random horizontal flips (off for digits: they are not symmetric)
    data.num_train = 10000  # toy sets only: training points drawn
    data.num_test = 2000  # toy sets only: held-out points drawn
    data.window = 32  # series only: time steps per training window
    # Worker processes that read and decode streamed batches (records, and in-memory sets over
    # 256 MB); 0 reads them in the training process (docs/data.md: what was measured).
    data.num_workers = 0
    data.stream = False  # folder only: decode images as batches need them, not all at start

    config.sde = sde = ml_collections.ConfigDict()
    sde.name = "vpsde"  # vpsde | subvpsde | vesde
    sde.beta_min = 0.1  # VP / sub-VP
    sde.beta_max = 20.0  # VP / sub-VP
    sde.sigma_min = 0.01  # VE
    sde.sigma_max = 50.0  # VE: about the largest distance between training points
    sde.N = 1000  # steps of the discrete chain (DDPM / SMLD) and of the default PC sampler

    config.model = model = ml_collections.ConfigDict()
    # ncsnpp (DDPM++ / NCSN++ U-Net) | mlp (toy data, tables) | series | classifier
    model.name = "ncsnpp"
    model.parameterization = "noise"  # noise (DDPM++) | scaled_score (NCSN++) | score
    model.time_input = "time"  # time (t * 999, positional embedding) | log_std (Fourier features)
    model.ema_rate = 0.999  # EMA of the parameters, used for evaluation and sampling
    model.ema_warmup = True  # decay min(ema_rate, (1 + step) / (10 + step)) (scorelab.step)
    model.conditional_classes = 0  # > 0: class-conditional on that many labels
    # > 0: that share of training labels is replaced by a null label, so one network gives
    # the conditional and the unconditional score (classifier-free guidance).
    model.label_dropout = 0.0
    # True: the network is conditioned on given cells (CSDI; the MLP): trained to predict a
    # share of each row's observed cells from the rest (training.cell_masks), for `impute`.
    model.conditional_cells = False
    # none | blocks: recompute each U-Net block's activations in the backward pass instead of
    # keeping them (jax.checkpoint): the same gradients for less memory and about a third more
    # compute per step (docs/training.md#memory).
    model.remat = "none"
    # The U-Net's attributes (models/unet.py; every one is listed, at the DDPM++ cont. values
    # unless set here): a 180k-parameter DDPM++ for 8x8 images (its step time:
    # docs/benchmarks.md#training). The paper's CIFAR-10 networks are in configs/cifar10_*.py.
    model.ncsnpp = ml_collections.ConfigDict(unet.ddpmpp_config(
        nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=()))
    # The MLP's attributes (models/mlp.py), used when model.name == "mlp".
    model.mlp = ml_collections.ConfigDict(dict(hidden=128, depth=3, embed_dim=64, dropout=0.0))
    # The series network's (models/series.py), when model.name == "series".
    model.series = ml_collections.ConfigDict(dict(channels=64, depth=3, heads=4, embed_dim=64))
    # The noise-conditional classifier's attributes (models/classifier.py), used when
    # model.name == "classifier": the run then trains log p_t(y | x_t) for classifier guidance.
    model.classifier = ml_collections.ConfigDict(dict(
        nf=32, ch_mult=(1, 2), num_res_blocks=1, dropout=0.1, embedding_type="positional",
        fourier_scale=16.0))

    config.training = training = ml_collections.ConfigDict()
    training.batch_size = 128  # global batch, split over all devices
    training.n_steps = 2000
    training.loss = "continuous"  # continuous (t ~ U(eps, T)) | discrete (DDPM / SMLD chain)
    training.reduce_mean = True  # mean over data dimensions (else half the sum)
    training.likelihood_weighting = False  # lambda(t) = g(t)^2 (Song et al. 2021b)
    training.importance_sampling = False  # t ~ g^2 / std^2 (likelihood weighting only)
    training.eps = 1e-5  # smallest training time
    # model.conditional_cells: which cells each row predicts (sde.target_cells): random |
    # pattern (the missing cells of another row) | mixed (either, per row)
    training.cell_masks = "random"
    training.log_every = 100
    training.eval_every = 2000  # held-out loss, samples, bits/dim (and at the end); 0: never
    training.checkpoint_every = 1000
    # > 0: every that many steps the held-out loss (the same noise each time) is computed, and
    # the EMA parameters of the lowest so far are kept in <workdir>/best for every command
    # that reads the run (model selection, as early stopping would; for small tables)
    training.select_every = 0
    training.max_to_keep = 2
    # Post-hoc EMA (EDM2; docs/training.md#post-hoc-ema): power-function EMAs of these relative
    # lengths are tracked and, every `ema_snapshot_every` steps, saved whole to
    # <workdir>/ema_snapshots (never pruned): 2 x the parameters each time (1.4 MB here), from
    # which `train.py ema --sigma_rel=S` rebuilds the EMA of any length. () turns it off.
    training.ema_profiles = (0.05, 0.10)
    training.ema_snapshot_every = 500
    # float32 | bfloat16: the train step's network compute; parameters, optimiser state, EMA,
    # loss and checkpoints stay float32, and evaluation and sampling run in float32.
    training.precision = "float32"
    training.nonfinite = "error"  # error: stop, naming the step | skip: drop that update

    config.optim = optim = ml_collections.ConfigDict()
    optim.lr = 2e-3
    optim.warmup = 200  # linear warm-up steps
    optim.grad_clip = 1.0  # global-norm clipping (0: off)
    optim.beta1 = 0.9
    optim.eps = 1e-8

    # Sampling at evaluation and by `train.py sample`: `method` names a sampler of
    # scorelab.sampling.SAMPLERS and its section holds that function's keyword arguments.
    config.sampling = sampling = ml_collections.ConfigDict()
    sampling.method = "pc"  # pc | sde | ode
    sampling.eps = 1e-3  # the smallest time the samplers reach
    sampling.num_samples = 64  # samples written as a grid and an npz at each evaluation
    sampling.pc = ml_collections.ConfigDict(dict(  # samplers.pc_sample
        predictor="reverse_diffusion",  # euler_maruyama | reverse_diffusion | ancestral | none
        corrector="langevin",  # langevin | ald | none
        snr=0.16, n_corrector_steps=1,
        num_steps=500,  # None: sde.N
        time_grid="uniform"))  # uniform | karras | logsnr (samplers.grids)
    sampling.sde = ml_collections.ConfigDict(dict(  # samplers.sde_sample
        solver="euler_maruyama",  # euler_maruyama | heun | sea | sra1 | shark
        num_steps=500, time_grid="uniform"))
    sampling.ode = ml_collections.ConfigDict(dict(  # samplers.ode_sample
        # euler | midpoint | heun | bosh3 | tsit5 | dopri5 | dopri8 (diffrax), or
        # ddim | dpmpp_2m | dpmpp_3m | dpmpp_3m_pc | edm_heun (few-step: need num_steps)
        solver="dopri5",
        num_steps=ml_collections.config_dict.placeholder(int),  # None: adaptive, with rtol / atol
        rtol=1e-5, atol=1e-5, denoise=True, time_grid="uniform"))

    config.eval = evaluation = ml_collections.ConfigDict()
    evaluation.num_likelihood = 32  # held-out examples for bits/dim (0: skip)
    # Samples drawn for the data set's sample metrics (the Frechet distance on the digit
    # classifier, sliced W2 for toy data); at least sampling.num_samples are drawn.
    evaluation.num_metric_samples = 256
    evaluation.batch_size = 256  # samples per sampler call; metrics keep only their features
    # FID / IS / KID / precision-recall on the FID Inception (docs/metrics.md): the path of
    # pytorch-fid's weights file pt_inception-2015-12-05-6726825d.pth ("" = off), the resize
    # (pytorch-fid | tf1) and a reference file of `train.py fid-stats` ("" = the run's
    # training images, featurised once into <workdir>/fid_reference_<resize>.npz).
    evaluation.inception_path = ""
    evaluation.inception_resize = "pytorch-fid"
    evaluation.inception_reference = ""
    return config
