"""Default: a small DDPM++ on the bundled 8x8 digits under the VP SDE; minutes on 2 CPU cores.

Every other config starts from this one and overrides a few fields. Any field can also be set on
the command line: `python train.py --config.training.n_steps=500`.
"""
import ml_collections


def get_config():
    config = ml_collections.ConfigDict()
    config.seed = 0  # all randomness (init, batches, noise, samples) derives from this

    config.data = data = ml_collections.ConfigDict()
    data.name = "digits"  # digits | npz | folder | cifar10 | mixture | moons | swiss_roll | checkerboard
    data.path = ""  # file (npz) or folder (folder) for the user's own images
    data.image_size = 0  # 0 keeps the native size; else an integer multiple of it
    data.centered = True  # model space [-1, 1] (True) or [0, 1] (False)
    data.dequantize = False  # uniform dequantisation (x + u) / 256 of 8-bit images in training
    data.random_flip = False  # random horizontal flips (off for digits: they are not symmetric)
    data.num_train = 10000  # toy sets only: training points drawn
    data.num_test = 2000  # toy sets only: held-out points drawn

    config.sde = sde = ml_collections.ConfigDict()
    sde.name = "vpsde"  # vpsde | subvpsde | vesde
    sde.beta_min = 0.1  # VP / sub-VP
    sde.beta_max = 20.0  # VP / sub-VP
    sde.sigma_min = 0.01  # VE
    sde.sigma_max = 50.0  # VE: about the largest distance between training points
    sde.N = 1000  # steps of the discrete chain (DDPM / SMLD) and of the default PC sampler

    config.model = model = ml_collections.ConfigDict()
    model.name = "ncsnpp"  # ncsnpp (DDPM++ / NCSN++ U-Net) | mlp (toy data)
    model.parameterization = "noise"  # noise (DDPM++) | scaled_score (NCSN++) | score
    model.time_input = "time"  # time (t * 999, positional embedding) | log_std (Fourier features)
    model.ema_rate = 0.999  # EMA of the parameters, used for evaluation and sampling
    # U-Net (models/unet.py): a 180k-parameter DDPM++ for 8x8 images (80 ms a step on 2 CPU
    # cores); the paper's CIFAR-10 sizes are in configs/cifar10_*.py.
    model.nf = 16
    model.ch_mult = (1, 2)
    model.num_res_blocks = 1
    model.attn_resolutions = ()
    model.dropout = 0.1
    model.resblock_type = "biggan"  # biggan (DDPM++ / NCSN++) | ddpm
    model.embedding_type = "positional"  # positional (DDPM++) | fourier (NCSN++)
    model.fourier_scale = 16.0
    model.fir = False  # FIR up/down-sampling (NCSN++)
    model.skip_rescale = True
    model.progressive = "none"  # none | output_skip | residual
    model.progressive_input = "none"  # none | input_skip | residual
    model.init_scale = 0.0
    model.conditional_classes = 0  # > 0: class-conditional on that many labels
    # MLP (models/mlp.py), used when model.name == "mlp".
    model.hidden = 128
    model.depth = 3

    config.training = training = ml_collections.ConfigDict()
    training.batch_size = 128  # global batch, split over all devices
    training.n_steps = 2000
    training.loss = "continuous"  # continuous (t ~ U(eps, T)) | discrete (DDPM / SMLD chain)
    training.reduce_mean = True  # mean over data dimensions (else half the sum)
    training.likelihood_weighting = False  # lambda(t) = g(t)^2 (Song et al. 2021b)
    training.importance_sampling = False  # t ~ g^2 / std^2 (likelihood weighting only)
    training.eps = 1e-5  # smallest training time
    training.log_every = 100
    training.eval_every = 2000  # held-out loss, samples, bits/dim
    training.checkpoint_every = 1000
    training.max_to_keep = 2
    training.nonfinite = "error"  # error: stop, naming the step | skip: drop that update

    config.optim = optim = ml_collections.ConfigDict()
    optim.lr = 2e-3
    optim.warmup = 200  # linear warm-up steps
    optim.grad_clip = 1.0  # global-norm clipping (0: off)
    optim.beta1 = 0.9
    optim.eps = 1e-8

    config.sampling = sampling = ml_collections.ConfigDict()
    sampling.method = "pc"  # pc | sde | ode
    sampling.predictor = "reverse_diffusion"  # pc: euler_maruyama | reverse_diffusion | ancestral | none
    sampling.corrector = "langevin"  # pc: langevin | ald | none
    sampling.snr = 0.16
    sampling.n_corrector_steps = 1
    sampling.solver = ""  # sde / ode: a solver name; "" picks euler_maruyama / tsit5
    sampling.num_steps = 500  # pc / sde steps; 0: sde.N for pc, 1000 for sde
    sampling.ode_num_steps = 0  # ode: 0 is adaptive with rtol / atol, else fixed steps
    sampling.rtol = 1e-5  # ode
    sampling.atol = 1e-5  # ode
    sampling.eps = 1e-3
    sampling.num_samples = 64

    config.eval = evaluation = ml_collections.ConfigDict()
    evaluation.num_likelihood = 32  # held-out examples for bits/dim (0: skip)
    evaluation.num_fid = 256  # samples for the Frechet distance on the digit classifier (0: skip)
    return config
