package rollouts

import (
	"context"
	"fmt"
	"time"
)

// blueGreen runs strategy.blueGreen: the new version comes up beside the
// active one behind the preview Service, pre-promotion analysis judges it,
// promotion (automatic, after autoPromotionSeconds, or an operator's)
// switches the active Service, post-promotion analysis judges it live, and
// the old version is scaled down scaleDownDelaySeconds later.
func (r *rolloutCtx) blueGreen(ctx context.Context) error {
	bg := r.ro.Spec.Strategy.BlueGreen
	replicas := r.ro.replicas()
	if r.hash == r.st.StableRS {
		return r.blueGreenSteady(ctx, bg)
	}
	if r.st.Abort {
		return r.blueGreenAborted(ctx, bg)
	}
	if err := r.keepScaled(ctx, r.newRS); err != nil {
		return err
	}
	active := r.st.BlueGreen.ActiveSelector
	if active == "" {
		active = r.st.StableRS
	}
	if err := r.pointService(ctx, bg.ActiveService, active); err != nil {
		return err
	}
	if err := r.pointService(ctx, bg.PreviewService, r.hash); err != nil {
		return err
	}
	r.st.BlueGreen.PreviewSelector = r.hash
	r.st.BlueGreen.ActiveSelector = active
	if r.ro.Spec.Paused {
		r.st.Phase, r.st.Message = PhasePaused, "manually paused"
		return nil
	}
	r.st.Phase = PhaseProgressing
	if err := r.terminateRuns(ctx, r.runName("pre"), r.runName("post")); err != nil {
		return err
	}

	if active != r.hash {
		// Before promotion: bring up the preview.
		preview := replicas
		if bg.PreviewReplicaCount != nil && !r.promotingFully() {
			preview = *bg.PreviewReplicaCount
		}
		r.stepBegins("preview")
		if err := r.scale(ctx, r.newRS, preview); err != nil {
			return err
		}
		if !settled(r.newRS, preview) {
			r.st.Message = fmt.Sprintf("waiting for %d preview replicas to be available", preview)
			return nil
		}
		if !r.st.BlueGreen.ScaleUpPreviewCheckPoint {
			r.stepEnds(ctx, "preview", "available")
		}
		r.st.BlueGreen.ScaleUpPreviewCheckPoint = true
		if bg.PrePromotionAnalysis != nil && !r.promotingFully() {
			run, err := r.analyse(ctx, r.runName("pre"), runPre, bg.PrePromotionAnalysis)
			if err != nil {
				return fmt.Errorf("prePromotionAnalysis: %w", err)
			}
			r.st.BlueGreen.PrePromotionAnalysisRunStatus = run
			ok, err := r.judge(ctx, run, func(ctx context.Context) error { return r.blueGreenAborted(ctx, bg) })
			if !ok || err != nil {
				return err
			}
		}
		if !r.promotingFully() && !r.promotionDue(bg) {
			return nil
		}
		if err := r.scale(ctx, r.newRS, replicas); err != nil {
			return err
		}
		if !settled(r.newRS, replicas) {
			r.st.Message = fmt.Sprintf("promoting: waiting for %d replicas to be available", replicas)
			return nil
		}
		if err := r.pointService(ctx, bg.ActiveService, r.hash); err != nil {
			return err
		}
		r.st.BlueGreen.ActiveSelector = r.hash
		r.stepEnds(ctx, "promotion", "switched")
	}
	// Promoted: the active Service sends to the new version.
	if bg.PostPromotionAnalysis != nil && !r.promotingFully() {
		run, err := r.analyse(ctx, r.runName("post"), runPost, bg.PostPromotionAnalysis)
		if err != nil {
			return fmt.Errorf("postPromotionAnalysis: %w", err)
		}
		r.st.BlueGreen.PostPromotionAnalysisRunStatus = run
		ok, err := r.judge(ctx, run, func(ctx context.Context) error { return r.blueGreenAborted(ctx, bg) })
		if !ok || err != nil {
			return err
		}
	}
	r.st.StableRS, r.stableRS = r.hash, r.newRS
	r.st.PromoteFull = false
	r.unpause()
	return r.blueGreenSteady(ctx, bg)
}

// promotionDue reports whether the preview may be promoted: automatic
// promotion (the default) at once or autoPromotionSeconds after the
// preview was ready; without it, once an operator promotes the pause away.
func (r *rolloutCtx) promotionDue(bg *BlueGreen) bool {
	auto := bg.AutoPromotionEnabled == nil || *bg.AutoPromotionEnabled
	if auto && bg.AutoPromotionSeconds == 0 {
		return true
	}
	since := r.pausedSince(pauseBlueGreen)
	if since == nil {
		if r.st.ControllerPause {
			r.unpause() // promoted
			return true
		}
		r.pause(pauseBlueGreen)
		since = &r.now
	}
	if auto {
		end := since.Add(time.Duration(bg.AutoPromotionSeconds) * time.Second)
		if !r.now.Before(end) {
			r.unpause()
			return true
		}
		r.wakeAt(end)
	}
	r.st.Phase, r.st.Message = PhasePaused, pauseBlueGreen
	return false
}

// blueGreenSteady is the promoted state: both Services on the stable
// version, older sets scaled down after scaleDownDelaySeconds (default
// 30).
func (r *rolloutCtx) blueGreenSteady(ctx context.Context, bg *BlueGreen) error {
	r.st.BlueGreen.ActiveSelector, r.st.BlueGreen.PreviewSelector = r.hash, r.hash
	return r.steady(ctx, []string{bg.ActiveService, bg.PreviewService}, seconds(bg.ScaleDownDelaySeconds, 30))
}

// blueGreenAborted puts the active Service back on the stable version and
// scales the new one down after abortScaleDownDelaySeconds (default 30).
func (r *rolloutCtx) blueGreenAborted(ctx context.Context, bg *BlueGreen) error {
	if err := r.terminateRuns(ctx); err != nil {
		return err
	}
	if err := r.scale(ctx, r.stableRS, r.ro.replicas()); err != nil {
		return err
	}
	if err := r.keepScaled(ctx, r.stableRS); err != nil {
		return err
	}
	if err := r.pointService(ctx, bg.ActiveService, r.st.StableRS); err != nil {
		return err
	}
	r.st.BlueGreen.ActiveSelector = r.st.StableRS
	if err := r.scaleDownAfter(ctx, r.newRS, seconds(bg.AbortScaleDownDelaySeconds, 30)); err != nil {
		return err
	}
	r.markAborted()
	return nil
}

func seconds(v *int32, def int32) time.Duration {
	if v == nil {
		return time.Duration(def) * time.Second
	}
	return time.Duration(*v) * time.Second
}
