python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res71; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
save() { (cd $R && tar czf $OUT/res.tgz .); }
GELU_FWD=tanh XLA_FLAGS=--xla_gpu_enable_cublaslt=true timeout 200 python3 scratch_dev/ab/gelu_lt_ab.py profile --cases lora-r8 --batch 256 --steps 5 --no-command-buffers --top 0 --out $R/prof-tanh-lt > $R/1-prof-tanh-lt.txt 2>&1
tail -4 $R/1-prof-tanh-lt.txt; echo "1 t=$SECONDS"; save
zcat $R/prof-tanh-lt/lora-r8.hlo.txt.gz | grep -o '"epilogue":"[A-Z_]*"' | sort | uniq -c
zcat $R/prof-tanh-lt/lora-r8.hlo.txt.gz | grep -c 'cublas\$lt'
python3 -c "
import json;d=json.load(open('$R/prof-tanh-lt/lora-r8.json'));print(d['device_ms_per_step'],d['categories_ms'])
[print(round(k['ms'],3),k['calls'],k['name'][:70],k.get('hlo',{}).get('op_name','')[-60:]) for k in d['kernels'][:14]]"
timeout 230 python3 scratch_dev/ab/mgpu_gemm_micro.py > $R/2-mgpu.txt 2>&1; grep -v "^ *File\|^Traceback" $R/2-mgpu.txt | tail -40
echo "end at $SECONDS s"; save
