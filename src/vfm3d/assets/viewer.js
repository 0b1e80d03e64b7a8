/* vfm3d report viewer: a small WebGL point-cloud and camera-frustum viewer, no library.
 * Reads the JSON block #v3d-data written by vfm3d.report.viewer (base64 little-endian Float32 /
 * Uint8 arrays, PNG depth images). World frame and cameras are OpenCV (x right, y down, z
 * forward); the view starts from the first camera's orientation, y down on screen.
 * Test hook: window.vfm3dViewer = {ready, drawn (frames rendered), drawCalls (gl.drawArrays
 * calls), errors, webgl, frame (slider position)}. */
(function () {
  "use strict";
  var hook = { ready: false, drawn: 0, drawCalls: 0, errors: [], webgl: null, frame: 0 };
  window.vfm3dViewer = hook;
  function fail(e) { hook.errors.push(String((e && e.stack) || e)); }
  window.addEventListener("error", function (ev) { fail(ev.message); });
  function $(id) { return document.getElementById(id); }

  var data;
  try { data = JSON.parse($("v3d-data").textContent); } catch (e) { fail(e); return; }

  // ------------------------------------------------------------------ decoding
  function bytes(b64) {
    var s = atob(b64), out = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  var LITTLE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  function f32(b64) {
    var u = bytes(b64);
    if (LITTLE) return new Float32Array(u.buffer);
    var dv = new DataView(u.buffer), out = new Float32Array(u.length / 4);
    for (var i = 0; i < out.length; i++) out[i] = dv.getFloat32(4 * i, true);
    return out;
  }

  // ------------------------------------------------------------------ depth slider (no WebGL needed)
  function setupSlider() {
    var slider = $("v3d-frame"), frames = data.frames || [];
    if (!slider || !frames.length) return;
    function png(b) { return "data:image/png;base64," + b; }
    function show(i) {
      var f = frames[i];
      $("v3d-rgbimg").src = png(f.rgb);
      $("v3d-predimg").src = png(f.pred);
      if ($("v3d-gtimg") && f.gt) $("v3d-gtimg").src = png(f.gt);
      $("v3d-framelabel").textContent = "frame " + f.index + " of " + data.num_frames +
        " (depth " + f.range[0].toFixed(3) + " to " + f.range[1].toFixed(3) + ")";
      hook.frame = i;
    }
    slider.addEventListener("input", function () {
      try { show(parseInt(slider.value, 10)); } catch (e) { fail(e); }
    });
    show(0);
  }
  try { setupSlider(); } catch (e) { fail(e); }

  // ------------------------------------------------------------------ WebGL setup
  var canvas = $("v3d-canvas");
  var gl = null;
  try {
    gl = canvas.getContext("webgl", { antialias: true, preserveDrawingBuffer: true }) ||
      canvas.getContext("experimental-webgl");
  } catch (e) { gl = null; }
  function noWebGL() {
    hook.webgl = false;
    canvas.style.display = "none";
    $("v3d-nogl").style.display = "block";
  }
  if (!gl) { noWebGL(); return; }
  hook.webgl = true;
  canvas.addEventListener("webglcontextlost", function (ev) { ev.preventDefault(); noWebGL(); });

  var VS = "attribute vec3 p; attribute vec3 c; uniform mat4 m; uniform float size;" +
    "uniform vec3 tint; uniform float tintAmt; varying vec3 vc;" +
    "void main() { gl_Position = m * vec4(p, 1.0); gl_PointSize = size;" +
    " vc = mix(c, tint, tintAmt); }";
  var FS = "precision mediump float; varying vec3 vc; uniform float roundPts;" +
    "void main() { if (roundPts > 0.5 && length(gl_PointCoord - 0.5) > 0.5) discard;" +
    " gl_FragColor = vec4(vc, 1.0); }";
  function shader(type, src) {
    var s = gl.createShader(type);
    gl.shaderSource(s, src);
    gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
    return s;
  }
  var prog = gl.createProgram();
  gl.attachShader(prog, shader(gl.VERTEX_SHADER, VS));
  gl.attachShader(prog, shader(gl.FRAGMENT_SHADER, FS));
  gl.bindAttribLocation(prog, 0, "p");
  gl.bindAttribLocation(prog, 1, "c");
  gl.linkProgram(prog);
  if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) { fail(gl.getProgramInfoLog(prog)); return; }
  gl.useProgram(prog);
  var U = {};
  ["m", "size", "tint", "tintAmt", "roundPts"].forEach(function (n) {
    U[n] = gl.getUniformLocation(prog, n);
  });
  function buffer(array) {
    var b = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, b);
    gl.bufferData(gl.ARRAY_BUFFER, array, gl.STATIC_DRAW);
    return b;
  }
  var COLORS = { pred: [0.91, 0.45, 0.10], gt: [0.12, 0.56, 1.0] };
  var clouds = {}, frusta = {};
  Object.keys(data.clouds || {}).forEach(function (k) {
    var c = data.clouds[k];
    clouds[k] = { n: c.n, pos: buffer(f32(c.positions)), col: buffer(bytes(c.colors)) };
  });
  Object.keys(data.frusta || {}).forEach(function (k) {
    var f = data.frusta[k];
    frusta[k] = { n: f.count * 16, pos: buffer(f32(f.segments)) };
  });

  // ------------------------------------------------------------------ orbit camera
  function mul3(a, b) {  // row-major 3x3 product
    var o = new Array(9);
    for (var r = 0; r < 3; r++) for (var c = 0; c < 3; c++)
      o[3 * r + c] = a[3 * r] * b[c] + a[3 * r + 1] * b[3 + c] + a[3 * r + 2] * b[6 + c];
    return o;
  }
  function rotX(a) { var c = Math.cos(a), s = Math.sin(a); return [1, 0, 0, 0, c, -s, 0, s, c]; }
  function rotY(a) { var c = Math.cos(a), s = Math.sin(a); return [c, 0, s, 0, 1, 0, -s, 0, c]; }
  var R0 = data.initial.world_to_cam_rotation;  // first camera, world -> camera, row-major
  var fov = Math.min(Math.max(data.initial.fov_y || 1.0, 0.3), 1.6);
  var size = data.size || 1.0;
  var view = {};
  function reset() {
    view.yaw = 0; view.pitch = 0;
    view.target = data.center.slice();
    view.dist = (0.5 * size) / Math.sin(fov / 2) * 1.05;
  }
  reset();
  function rotation() { return mul3(rotX(view.pitch), mul3(rotY(view.yaw), R0)); }
  // Column-major clip-from-world matrix; view coordinates are OpenCV (y down, z forward).
  function matrix(aspect) {
    var R = rotation(), t = view.target, d = view.dist;
    var V = [];
    for (var r = 0; r < 3; r++) {
      var row = [R[3 * r], R[3 * r + 1], R[3 * r + 2]];
      row.push(-(row[0] * t[0] + row[1] * t[1] + row[2] * t[2]) + (r === 2 ? d : 0));
      V.push(row);
    }
    var near = Math.max(d * 0.01, 1e-4), far = d + 4 * size;
    var fy = 1 / Math.tan(fov / 2), fx = fy / aspect;
    var A = (far + near) / (far - near), B = -2 * far * near / (far - near);
    var M = [
      V[0].map(function (v) { return fx * v; }),
      V[1].map(function (v) { return -fy * v; }),
      V[2].map(function (v, i) { return A * v + (i === 3 ? B : 0); }),
      V[2].slice()
    ];
    var out = new Float32Array(16);
    for (var c = 0; c < 4; c++) for (var rr = 0; rr < 4; rr++) out[4 * c + rr] = M[rr][c];
    return out;
  }

  // ------------------------------------------------------------------ drawing
  function checked(id) { var el = $(id); return !!(el && el.checked); }
  function drawPart(x, y, w, h, names) {
    gl.viewport(x, y, w, h);
    gl.uniformMatrix4fv(U.m, false, matrix(w / h));
    var tint = checked("v3d-tint");
    var px = parseFloat(($("v3d-size") || { value: 3 }).value) * (window.devicePixelRatio || 1);
    names.forEach(function (k) {
      var c = clouds[k];
      if (!c || !checked(k === "pred" ? "v3d-pred" : "v3d-gt")) return;
      gl.bindBuffer(gl.ARRAY_BUFFER, c.pos);
      gl.vertexAttribPointer(0, 3, gl.FLOAT, false, 0, 0);
      gl.enableVertexAttribArray(1);
      gl.bindBuffer(gl.ARRAY_BUFFER, c.col);
      gl.vertexAttribPointer(1, 3, gl.UNSIGNED_BYTE, true, 0, 0);
      gl.uniform3fv(U.tint, COLORS[k]);
      gl.uniform1f(U.tintAmt, tint ? 0.6 : 0.0);
      gl.uniform1f(U.size, px);
      gl.uniform1f(U.roundPts, 1.0);
      gl.drawArrays(gl.POINTS, 0, c.n);
      hook.drawCalls += 1;
    });
    names.forEach(function (k) {
      var f = frusta[k];
      if (!f || !checked(k === "pred" ? "v3d-predcam" : "v3d-gtcam")) return;
      gl.bindBuffer(gl.ARRAY_BUFFER, f.pos);
      gl.vertexAttribPointer(0, 3, gl.FLOAT, false, 0, 0);
      gl.disableVertexAttribArray(1);
      gl.vertexAttrib3f(1, COLORS[k][0], COLORS[k][1], COLORS[k][2]);
      gl.uniform1f(U.tintAmt, 0.0);
      gl.uniform1f(U.roundPts, 0.0);
      gl.drawArrays(gl.LINES, 0, f.n);
      hook.drawCalls += 1;
    });
  }
  function render() {
    var dpr = window.devicePixelRatio || 1;
    var W = Math.max(1, Math.round(canvas.clientWidth * dpr));
    var H = Math.max(1, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== W || canvas.height !== H) { canvas.width = W; canvas.height = H; }
    gl.enable(gl.DEPTH_TEST);
    gl.disable(gl.SCISSOR_TEST);
    gl.clearColor(1, 1, 1, 1);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    gl.enableVertexAttribArray(0);
    if (checked("v3d-side") && clouds.gt) {
      var half = Math.floor(W / 2);
      drawPart(0, 0, half, H, ["pred"]);
      drawPart(half, 0, W - half, H, ["gt"]);
      gl.enable(gl.SCISSOR_TEST);  // a grey divider between the two halves
      gl.scissor(half - 1, 0, 2, H);
      gl.clearColor(0.6, 0.6, 0.6, 1);
      gl.clear(gl.COLOR_BUFFER_BIT);
      gl.disable(gl.SCISSOR_TEST);
    } else {
      drawPart(0, 0, W, H, ["pred", "gt"]);
    }
    var err = gl.getError();
    if (err !== gl.NO_ERROR) fail("WebGL error " + err);
    hook.drawn += 1;
    hook.ready = true;
  }
  var pending = false;
  function request() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () {
      pending = false;
      try { render(); } catch (e) { fail(e); }
    });
  }
  hook.redraw = request;
  hook.view = view;

  // ------------------------------------------------------------------ interaction
  var drag = null;
  canvas.addEventListener("contextmenu", function (ev) { ev.preventDefault(); });
  canvas.addEventListener("pointerdown", function (ev) {
    drag = { x: ev.clientX, y: ev.clientY, pan: ev.button === 2 || ev.shiftKey };
    if (canvas.setPointerCapture) canvas.setPointerCapture(ev.pointerId);
    ev.preventDefault();
  });
  canvas.addEventListener("pointermove", function (ev) {
    if (!drag) return;
    var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    drag.x = ev.clientX; drag.y = ev.clientY;
    if (drag.pan) {
      var R = rotation(), k = 2 * view.dist * Math.tan(fov / 2) / Math.max(canvas.clientHeight, 1);
      for (var i = 0; i < 3; i++) view.target[i] -= k * (dx * R[i] + dy * R[3 + i]);
    } else {
      view.yaw -= dx * 0.01;
      view.pitch = Math.max(-1.55, Math.min(1.55, view.pitch + dy * 0.01));
    }
    request();
  });
  function end(ev) {
    drag = null;
    if (canvas.releasePointerCapture && ev.pointerId !== undefined) {
      try { canvas.releasePointerCapture(ev.pointerId); } catch (e) { /* not captured */ }
    }
  }
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  canvas.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    view.dist *= Math.exp(Math.max(-100, Math.min(100, ev.deltaY)) * 0.002);
    request();
  }, { passive: false });
  canvas.addEventListener("dblclick", function () { reset(); request(); });
  ["v3d-pred", "v3d-gt", "v3d-predcam", "v3d-gtcam", "v3d-side", "v3d-tint", "v3d-size"]
    .forEach(function (id) {
      if (!$(id)) return;
      $(id).addEventListener("input", request);
      $(id).addEventListener("change", request);
    });
  window.addEventListener("resize", request);
  request();
})();
