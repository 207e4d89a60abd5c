#!/usr/bin/env bash
# Makes real, playable H.264 MP4 videos (ffmpeg test sources) totalling about MB
# megabytes, cached under /var/cache/ferry/media/<MB>/. Constant bitrate with filler
# keeps each file's size predictable. Prints the directory.
# Usage: gen-videos.sh MB
set -euo pipefail
source "$(dirname "$0")/lib.sh"
mb=${1:?usage: gen-videos.sh MB}
[[ $mb =~ ^[0-9]+$ && $mb -ge 1 ]] || die "video size must be a positive number of MB, got '$mb'"
command -v ffmpeg >/dev/null || die "ffmpeg is missing — run 'make deps' (deploy/packages/service.txt)"
h=$(hash_paths "$SERVICE_DIR/gen-videos.sh")
dir=$MEDIA_CACHE/$mb-$h
if [[ -f $dir/.complete ]]; then echo "$dir"; exit 0; fi
mkdir -p "$MEDIA_CACHE"
exec 9>"$MEDIA_CACHE/.lock"; flock -w 1800 9 || die "another video generation holds the lock"
if [[ -f $dir/.complete ]]; then echo "$dir"; exit 0; fi
rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
# Files of at most 25 MB, at least two when there is room.
count=$(((mb + 24) / 25)); ((count < 2 && mb >= 2)) && count=2
kbps=3000                                   # video bitrate, CBR
total_kb=$((mb * 1000 * 8))                 # kbit
secs=$(((total_kb / count) / kbps)); ((secs < 1)) && secs=1
log "making $count video(s) of ${secs}s at ${kbps} kbit/s (~${mb} MB) in $dir"
for ((i = 1; i <= count; i++)); do
  name=$(printf 'clip%02d.mp4' "$i")
  ffmpeg -nostdin -loglevel error -y \
    -f lavfi -i "testsrc2=size=640x360:rate=30:duration=$secs" \
    -f lavfi -i "sine=frequency=$((300 + 40 * i)):sample_rate=48000:duration=$secs" \
    -c:v libx264 -preset ultrafast -pix_fmt yuv420p -profile:v baseline \
    -b:v ${kbps}k -minrate ${kbps}k -maxrate ${kbps}k -bufsize $((kbps / 2))k -x264-params nal-hrd=cbr \
    -c:a aac -b:a 96k -movflags +faststart "$dir.tmp/$name" || die "ffmpeg failed for $name"
done
touch "$dir.tmp/.complete"
mv "$dir.tmp" "$dir"
log "videos ready: $(du -sh --apparent-size "$dir" | cut -f1)"
echo "$dir"
