#!/usr/bin/env bash
# A corpus of real recorded, unlabelled audio from Debian packages, and probe tasks derived from its paths
# (docs/PROBE.md, "Corpus"). Needs no root: `apt-get download` fetches the .deb files and `dpkg-deb -x`
# unpacks them under a cache folder outside the repository (no package is installed, no audio is committed).
#
#   bash scripts/corpus.sh            # download (once), unpack, write the manifests, print hours and counts
#
# Writes, under $EARSHOT_CORPUS (default ~/.cache/earshot-corpus):
#   debs/ root/                      the packages and their unpacked files
#   pretrain/metadata.csv            unlabelled pretraining clips: the corpus without the probe tasks' test
#                                    clips, FSDD's training split, ESC-10 folds 2-5 (never a test clip)
#   tasks/language/metadata.csv      spoken language (en, es, fr, it, ru) of Asterisk's recorded prompts;
#                                    test = every 5th prompt name in sorted order, in all five languages
#   tasks/drums/metadata.csv         drum type (kick, snare, hihat, tom, cymbal, clap) from sample file names
#                                    of Hydrogen's kits; speaker = kit (kit-disjoint CV), test = whole kits
#   tasks/drums-kits/metadata.csv    the same drum clips in 4 folds of whole kits (every kit tested once: far less
#                                    noise than 3 test kits; the 9 training kits were pretraining audio, unlabelled)
#   tasks/esc10-fold1/metadata.csv   ESC-10 with fold 1 as the test split (the fold pretraining never sees)
# Every manifest has absolute paths: `earshot probe --data $EARSHOT_CORPUS/tasks/drums` reads it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${EARSHOT_CORPUS:-$HOME/.cache/earshot-corpus}
shared=$(cd "${EARSHOT_SHARED_DATA:-$repo/../shared/data}" && pwd)
packages=(asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav asterisk-core-sounds-it-wav
          asterisk-core-sounds-ru-wav asterisk-moh-opsound-wav hydrogen-drumkits colobot-common-sounds sound-theme-freedesktop)
# Hydrogen kits whose samples are the drum task's test split: together they hold every class.
test_kits="ForzeeStereo|Millo_MultiLayered2|VariBreaks"

mkdir -p "$cache/debs" "$cache/root"
cd "$cache/debs"
for p in "${packages[@]}"; do
  ls "${p}"_*.deb >/dev/null 2>&1 && continue
  echo "corpus: downloading $p" >&2
  apt-get download "$p" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || { echo "corpus: apt-get download $p failed (apt-get update?)" >&2; exit 1; }
done
for deb in *.deb; do
  stamp="$cache/root/.unpacked-${deb%.deb}"
  [ -e "$stamp" ] || { dpkg-deb -x "$deb" "$cache/root" && touch "$stamp"; }
done
share="$cache/root/usr/share"
audio='\.(wav|flac|aiff|ogg|oga)$'

# Language: every prompt but the silence/ folder (silences carry no language).
mkdir -p "$cache/tasks/language" "$cache/tasks/drums" "$cache/tasks/drums-kits" "$cache/tasks/esc10-fold1" "$cache/pretrain"
lang_list=$(cd "$share/asterisk/sounds" && find . -type f | grep -E "$audio" | grep -v '/silence/' | sed 's|^\./||' | LC_ALL=C sort)
test_prompts=$(echo "$lang_list" | cut -d/ -f2- | LC_ALL=C sort -u | awk 'NR % 5 == 0')
{
  echo "path,label,split"
  echo "$lang_list" | awk -F/ -v root="$share/asterisk/sounds" -v tests="$test_prompts" '
    BEGIN { n = split(tests, t, "\n"); for (i = 1; i <= n; i++) test[t[i]] = 1 }
    { lang = substr($1, 1, 2); rel = substr($0, length($1) + 2)
      printf "%s/%s,%s,%s\n", root, $0, lang, (rel in test) ? "test" : "train" }'
} > "$cache/tasks/language/metadata.csv"

# Drums: the type from the file name (first match wins; samples naming none, e.g. cowbells, bongos, loops,
# are pretraining audio only).
{
  echo "path,label,speaker,split"
  (cd "$share/hydrogen/data/drumkits" && find . -type f | grep -Ei "$audio" | sed 's|^\./||' | LC_ALL=C sort) | awk -F/ \
    -v root="$share/hydrogen/data/drumkits" -v tk="^($test_kits)\$" '
    { kit = $1; f = tolower($NF); sub(/\.[a-z0-9]+$/, "", f); label = ""
      if (f ~ /kick|bassdrum|(^|[^a-z])bd/) label = "kick"
      else if (f ~ /hi-?hat|hhat|(^|[^a-z])hat|^c?hh|^ohh|^ho_|_chh|_ohh|_hh/) label = "hihat"
      else if (f ~ /snare|^sd_|^sn[0-9]*_|_sn_/) label = "snare"
      else if (f ~ /tom|^ft_|^t[0-9]_/) label = "tom"
      else if (f ~ /crash|ride|china|splash|cymbal|^cc_|^rc_|^rd[0-9]*_|^cra_/) label = "cymbal"
      else if (f ~ /clap/) label = "clap"
      if (label != "") printf "%s/%s,%s,%s,%s\n", root, $0, label, kit, (kit ~ tk) ? "test" : "train" }'
} > "$cache/tasks/drums/metadata.csv"

# Drums by kit folds: kits largest first, each into the fold with the fewest clips so far (ties: the lower
# fold), so the four folds hold about 100 clips each and every kit is a test kit once.
{
  echo "path,label,speaker,fold"
  awk -F, 'NR > 1 { n[$3]++; line[NR] = $1 "," $2 "," $3; kit[NR] = $3 }
    END { m = 0; for (k in n) { m++; name[m] = k }
          for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++)   # by size, then name: the same on every machine
            if (n[name[j]] > n[name[i]] || (n[name[j]] == n[name[i]] && name[j] < name[i])) { t = name[i]; name[i] = name[j]; name[j] = t }
          for (i = 1; i <= m; i++) { f = 1; for (g = 2; g <= 4; g++) if (size[g] < size[f]) f = g; fold[name[i]] = f; size[f] += n[name[i]] }
          for (r = 2; r <= NR; r++) print line[r] "," fold[kit[r]] }' "$cache/tasks/drums/metadata.csv"
} > "$cache/tasks/drums-kits/metadata.csv"

# ESC-10 with fold 1 as test (pretraining uses folds 2-5 only).
awk -F, -v root="$shared/esc10" 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; print "path,label,fold_of_esc10,split"; next }
  { printf "%s/%s,%s,%s,%s\n", root, $col["path"], $col["category"], $col["fold"], ($col["fold"] == 1) ? "test" : "train" }' \
  "$shared/esc10/metadata.csv" > "$cache/tasks/esc10-fold1/metadata.csv"

# Pretraining: every audio file of the packages but the tasks' test clips and silences, FSDD's training
# split, ESC-10 folds 2-5. Labels are never used.
{
  echo "path"
  find "$share/asterisk" "$share/hydrogen" "$share/games" "$share/sounds" -type f | grep -Ei "$audio" | grep -v '/silence/' | LC_ALL=C sort \
    | grep -vxF -f <(awk -F, 'NR > 1 && $NF == "test" { print $1 }' "$cache/tasks/language/metadata.csv" "$cache/tasks/drums/metadata.csv")
  awk -F, -v root="$shared/fsdd" 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    $col["split"] != "test" { print root "/" $col["path"] }' "$shared/fsdd/metadata.csv"
  awk -F, 'NR > 1 && $NF == "train" { print $1 }' "$cache/tasks/esc10-fold1/metadata.csv"
} > "$cache/pretrain/metadata.csv"

for m in pretrain tasks/language tasks/drums tasks/drums-kits tasks/esc10-fold1; do
  echo "$m: $(($(wc -l < "$cache/$m/metadata.csv") - 1)) clips ($cache/$m/metadata.csv)"
done
echo "drum classes (train/test):"
awk -F, 'NR > 1 { n[$2 " " $4]++ } END { for (k in n) print "  " k, n[k] }' "$cache/tasks/drums/metadata.csv" | sort
